"""Training: the loop (loop.py), the text streams it reads (data.py), exact resume
(run_state.py), several processes (distributed.py), presets, and the device and precision."""
