"""tinygradlm: a small LLM-training system whose every gradient can be read and verified.

- ``tinygradlm.autograd``: a reverse-mode autograd engine on NumPy (``tinygradlm.Tensor``), whose
  gradients can be differentiated again (``grad``, ``hvp``; docs/higher_order.md).
- ``tinygradlm.testing``: finite-difference gradient checks for your own functions.

Importing the package needs only NumPy; MPI (``mpi4py``) is imported by the modules that use it,
when they are used.
"""

from .autograd import Tensor, grad, hvp, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "__version__", "grad", "hvp", "no_grad"]
