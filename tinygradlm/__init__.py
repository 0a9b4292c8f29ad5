"""tinygradlm: a small LLM-training system whose every gradient can be read and verified.

- ``tinygradlm.autograd``: a reverse-mode autograd engine on NumPy (``tinygradlm.Tensor``).
- ``tinygradlm.testing``: finite-difference gradient checks for your own functions.

Importing the package needs only NumPy; MPI (``mpi4py``) is imported by the modules that use it,
when they are used.
"""

from .autograd import Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "__version__", "no_grad"]
