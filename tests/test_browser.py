"""End-to-end: the course in a real JupyterLab, driven in headless Chromium.

Each test starts from a copy of the course folder, so nothing it types is saved into the
repository. Screenshots land in artifacts/browser/.
"""

import json
import re
import shutil
import time

import pytest
from browser_support import (
    ROOT,
    cell,
    chromium_page,
    jupyterlab_server,
    menu,
    open_notebook,
    replace_cell_source,
    require_browser,
    run_cell,
    save_screenshot,
    wait_until_idle,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium():
    return require_browser()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium):
    """A JupyterLab server over a scratch copy of the course's notebooks."""
    course = tmp_path_factory.mktemp("course")
    for folder in ("notebooks", "exercises", "solutions", "checkpoints"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, course / folder)
    with jupyterlab_server(course, tmp_path_factory.mktemp("lab")) as url:
        yield url


@pytest.fixture
def page(chromium, tmp_path):
    with chromium_page(chromium, tmp_path / "profile") as page:
        yield page


def cells_holding(notebook_path, markers):
    """Indices (among all cells, as JupyterLab counts them) of the one code cell that holds each marker."""
    cells = json.loads((ROOT / notebook_path).read_text())["cells"]
    indices = []
    for marker in markers:
        found = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and marker in "".join(c["source"])]
        assert len(found) == 1, f"{notebook_path}: expected one code cell holding {marker!r}, found {len(found)}"
        indices.append(found[0])
    return indices


# What each lesson's explainer needs: the set-up, the model and tokenizer, the explainer. nbval runs every
# cell of both lessons already; running only these keeps the browser tests about the widget, and quick.
LESSON_11_EXPLAINER_CELLS = (
    'course_lib.require("0.2")',
    "# Setup: imports",
    "tokenizer = grammar.make_tokenizer()",
    "RETRAIN = False",
    "explainer = GPTExplainer(model, tokenizer",
)
LESSON_14_EXPLAINER_CELLS = (
    'course_lib.require("0.2")',
    "# Setup: find SmolLM2's file",
    "reader = read_gguf(smollm2_file)",
    "config = llama_config_from_gguf(reader)",
    "model = load_llama(gguf_state_dict(reader, config), config)",
    "explainer = GPTExplainer(model, tokenizer",
)


def wait_for_new_picture(page, figure, old: bytes, seconds: float = 30) -> bytes:
    """Wait until ``figure`` shows something other than ``old``; return its screenshot. The token list is
    HTML and updates first; the figure is a PNG the kernel sends a moment later."""
    deadline = time.monotonic() + seconds
    shot = figure.screenshot()
    while shot == old and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        shot = figure.screenshot()
    return shot


def wait_for_tokens(page, tokens, expected: list[str], timeout: int) -> list[str]:
    """Wait until the explainer's token list ends with ``expected`` and return the whole list. Waiting for
    one word is not enough: the starting prompt may hold it already."""
    page.wait_for_function(
        """([element, expected]) => {
            const shown = Array.from(element.querySelectorAll('code'), code => code.textContent);
            return JSON.stringify(shown.slice(-expected.length)) === JSON.stringify(expected);
        }""",
        arg=[tokens.element_handle(), expected],
        timeout=timeout,
    )
    return tokens.locator("code").all_inner_texts()


def run_cells_holding(page, notebook_path, markers):
    for index in cells_holding(notebook_path, markers):
        run_cell(page, index)


def step_through_output(page):
    """The output area that holds the attention step-through widget (it has a 'softmax' stage button)."""
    return page.locator(".jp-OutputArea-output").filter(
        has=page.locator(".widget-toggle-button", has_text=re.compile(r"^softmax$"))
    )


def test_lesson_03_runs_and_the_step_through_heatmap_follows_its_controls(page, lab):
    open_notebook(page, lab, "notebooks/03_self_attention.ipynb")
    menu(page, "Run", "Run All Cells")
    wait_until_idle(page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert page.locator(".jp-RenderedText .ansi-red-fg, .jp-RenderedText:has-text('Traceback')").count() == 0, (
        f"a cell raised an error ({errors.count()} stderr outputs)"
    )

    widget = step_through_output(page).first
    widget.scroll_into_view_if_needed()
    heatmap = widget.locator("img").first
    heatmap.wait_for(state="visible")
    before = heatmap.screenshot()
    save_screenshot(widget, "lesson03_step_through_before")

    selected = widget.locator(".widget-toggle-button.mod-active").inner_text().strip()
    other_stage = "QK^T" if selected != "QK^T" else "softmax"
    widget.locator(".widget-toggle-button", has_text=re.compile(rf"^{re.escape(other_stage)}$")).click()
    page.wait_for_timeout(1500)
    after_stage = heatmap.screenshot()
    assert after_stage != before, "the heatmap did not change when the stage changed"

    sentence = widget.locator("select").first  # the sentence dropdown
    options = sentence.locator("option").all_inner_texts()
    assert len(options) > 1
    sentence.select_option(label=options[1])
    page.wait_for_timeout(1500)
    after_sentence = heatmap.screenshot()
    assert after_sentence != after_stage, "the heatmap did not change when the sentence changed"

    handle = widget.locator(".widget-slider .noUi-handle").first  # the head slider
    if float(handle.get_attribute("aria-valuemax")) > 0:  # a one-head step-through has nothing to move
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(1500)
        assert handle.get_attribute("aria-valuenow") != "0.0"
        assert heatmap.screenshot() != after_sentence, "the heatmap did not change when the head changed"
    save_screenshot(widget, "lesson03_step_through_after")


def first_exercise_cells(notebook_path):
    """Indices of the set-up cell, the first stub and its check cell, and the solution's source."""
    exercise = json.loads((ROOT / "exercises" / notebook_path).read_text())["cells"]
    solution = json.loads((ROOT / "solutions" / notebook_path).read_text())["cells"]
    sources = ["".join(c["source"]) if c["cell_type"] == "code" else "" for c in exercise]
    stub = next(i for i, s in enumerate(sources) if "raise NotImplementedError" in s)
    check = next(i for i in range(stub + 1, len(sources)) if "check_" in sources[i])
    setup = next(i for i, c in enumerate(exercise) if c["cell_type"] == "code")
    solved = "".join(solution[stub]["source"])
    return setup, stub, check, solved


def test_an_exercise_check_passes_with_a_right_answer_and_hints_at_a_wrong_one(page, lab):
    notebook = "03_self_attention.ipynb"
    setup, stub, check, solved = first_exercise_cells(notebook)
    assert "sqrt" in solved, "exercise 03.1 is expected to scale the scores by sqrt(d)"
    open_notebook(page, lab, f"exercises/{notebook}")
    run_cell(page, setup)

    replace_cell_source(page, stub, solved)
    run_cell(page, stub)
    run_cell(page, check)
    output = cell(page, check).locator(".jp-OutputArea")
    assert re.search(r"✓ 03\.1", output.inner_text()), output.inner_text()
    save_screenshot(cell(page, check), "exercise03_right")

    wrong = re.sub(r"math\.sqrt\((\w+)\)", r"\1", solved)  # divide by d instead of sqrt(d)
    assert wrong != solved
    replace_cell_source(page, stub, wrong)
    run_cell(page, stub)
    run_cell(page, check)
    text = output.inner_text()
    assert "CheckFailed" in text and re.search(r"sqrt", text), text
    save_screenshot(cell(page, check), "exercise03_wrong")


def test_the_explainer_generates_a_token_in_lesson_11(page, lab):
    open_notebook(page, lab, "notebooks/11_train_a_tiny_gpt.ipynb")
    run_cells_holding(page, "notebooks/11_train_a_tiny_gpt.ipynb", LESSON_11_EXPLAINER_CELLS)
    assert page.locator(".jp-RenderedText .ansi-red-fg, .jp-RenderedText:has-text('Traceback')").count() == 0, (
        "a cell of lesson 11 raised an error"
    )
    explainer = page.locator(".jp-OutputArea-output").filter(
        has=page.locator("button", has_text=re.compile(r"^\s*Generate\s*$"))
    )
    explainer = explainer.first
    explainer.scroll_into_view_if_needed()
    tokens = explainer.locator(".widget-html-content").filter(has_text="tokens:").first
    figure = explainer.locator("img").first
    figure.wait_for(state="visible")

    initial = figure.screenshot()
    prompt = explainer.locator(".widget-text input").first
    prompt.fill("the cat that the dogs chase")
    prompt.press("Enter")
    typed = wait_for_tokens(page, tokens, ["cat", "that", "the", "dogs", "chase"], timeout=15_000)
    assert typed == ["<bos>", "the", "cat", "that", "the", "dogs", "chase"], typed
    before = wait_for_new_picture(page, figure, initial)
    assert before != initial, "the explainer's figure did not change for the new prompt"
    save_screenshot(explainer, "lesson11_explainer_prompt")

    explainer.locator("button", has_text=re.compile(r"^\s*Generate\s*$")).click()
    page.wait_for_function(
        f"element => element.querySelectorAll('code').length === {len(typed) + 1}",
        arg=tokens.element_handle(),
        timeout=15_000,
    )
    grown = tokens.locator("code").all_inner_texts()
    assert grown[: len(typed)] == typed and len(grown) == len(typed) + 1
    assert wait_for_new_picture(page, figure, before) != before, "the explainer's figure did not change after Generate"
    save_screenshot(explainer, "lesson11_explainer_generated")


def test_the_explainer_generates_a_token_on_smollm2_in_lesson_14(page, lab):
    from course_lib.pretrained import SMOLLM2_INSTALL_COMMAND, smollm2_path

    try:
        smollm2_path()
    except ImportError:
        pytest.skip(f"SmolLM2's weights: {SMOLLM2_INSTALL_COMMAND}")
    open_notebook(page, lab, "notebooks/14_real_chat_llm.ipynb")
    run_cells_holding(page, "notebooks/14_real_chat_llm.ipynb", LESSON_14_EXPLAINER_CELLS)
    assert page.locator(".jp-RenderedText .ansi-red-fg, .jp-RenderedText:has-text('Traceback')").count() == 0, (
        "a cell of lesson 14 raised an error"
    )
    explainer = page.locator(".jp-OutputArea-output").filter(
        has=page.locator("button", has_text=re.compile(r"^\s*Generate\s*$"))
    )
    explainer = explainer.first
    explainer.scroll_into_view_if_needed()
    tokens = explainer.locator(".widget-html-content").filter(has_text="tokens:").first
    figure = explainer.locator("img").first
    figure.wait_for(state="visible")

    initial = figure.screenshot()
    prompt = explainer.locator(".widget-text input").first
    prompt.fill("The capital of Italy is")
    prompt.press("Enter")
    typed = wait_for_tokens(page, tokens, ["␣Italy", "␣is"], timeout=30_000)
    assert typed == ["The", "␣capital", "␣of", "␣Italy", "␣is"], typed  # SmolLM2's byte-level BPE, spaces as ␣
    before = wait_for_new_picture(page, figure, initial)
    assert before != initial, "the explainer's figure did not change for the new prompt"
    save_screenshot(explainer, "lesson14_explainer_prompt")

    explainer.locator("button", has_text=re.compile(r"^\s*Generate\s*$")).click()
    page.wait_for_function(
        f"element => element.querySelectorAll('code').length === {len(typed) + 1}",
        arg=tokens.element_handle(),
        timeout=30_000,
    )
    grown = tokens.locator("code").all_inner_texts()
    assert grown[: len(typed)] == typed and len(grown) == len(typed) + 1
    assert wait_for_new_picture(page, figure, before) != before, "the explainer's figure did not change after Generate"
    save_screenshot(explainer, "lesson14_explainer_generated")
