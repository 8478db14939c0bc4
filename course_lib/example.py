"""The running example carried through lessons 01-09: one short sentence whose tokens
the learner watches become embeddings, positions, attention weights and probabilities.
"""

RUNNING_SENTENCE = "the cat sat on the mat because it was tired"
