"""Data for funcnets: bundled real data (scikit-learn digits), local MNIST IDX files.

``funcnets.data`` is a package; :mod:`funcnets.data.digits` holds the in-memory data
sets (:func:`load_digits`, :func:`load_mnist`, :func:`read_idx`).
"""

from funcnets.data.digits import Split, fingerprint, load_digits, load_mnist, random_shift, read_idx, resize_images

__all__ = ["Split", "load_digits", "read_idx", "load_mnist", "resize_images", "random_shift", "fingerprint"]
