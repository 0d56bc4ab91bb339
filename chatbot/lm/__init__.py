"""The language model: its weights (model.py), its memory (state.py), the same weights run
one token at a time (stepper.py) or gate by gate (gates.py), and checkpoint folders."""
