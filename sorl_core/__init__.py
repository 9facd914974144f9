"""SORL Lab core: the SORL agent, toy worlds, OGBench data, training, evaluation and rendering."""

import os

# MuJoCo picks its headless OpenGL backend when first imported: EGL (Mesa, software on a CPU) unless
# the user chose another (e.g. MUJOCO_GL=osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")
