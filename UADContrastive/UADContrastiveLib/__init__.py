"""UADContrastive core: unsupervised anomaly detection in brain MRI.

Pure Python (SimpleITK, numpy, torch, MONAI); never imports slicer or qt, so it runs
from the command line (`uadc`), from Python, and behind the Slicer module.
"""

__version__ = "0.1.0"
