"""Builds funcnets' compiled pieces: oneDNN's convolutions and its LSTM/GRU layers as XLA FFI
handlers (``src/funcnets/csrc/onednn_conv.cc``, ``onednn_rnn.cc``), on x86-64 Linux, where ``onednn-cpu-gomp`` has
wheels, and im2col for the GEMM convolutions (``im2col.cc``). The build is optional: without it
(no compiler, another platform) funcnets uses XLA's convolutions, ``lax.scan`` RNNs and XLA's
slices, and ``funcnets.nn.onednn_error()`` says why."""

import platform
import sys
from importlib import metadata
from pathlib import Path

from setuptools import Extension, setup


def _installed_path(dist: str, suffix: str) -> str:
    """The folder holding ``suffix``'s first part, in an installed distribution (its data files lie under the prefix)."""
    for f in metadata.distribution(dist).files or ():
        path = Path(f.locate()).resolve()  # RECORD names data files relative to site-packages
        if path.as_posix().endswith("/" + suffix):
            return str(path.parents[suffix.count("/") - 1])
    raise FileNotFoundError(f"{suffix} is not in {dist}")


def _extensions():
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        return []
    import jax.ffi  # jaxlib ships XLA's FFI headers

    # oneDNN's convolutions; oneDNN's LSTM/GRU layers (funcnets.nn._onednn_rnn), each optional on its own
    return [Extension(
        f"funcnets._onednn_{name}",
        sources=[f"src/funcnets/csrc/onednn_{name}.cc"],
        include_dirs=[jax.ffi.include_dir(), _installed_path("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.hpp")],
        library_dirs=[_installed_path("onednn-cpu-gomp", "lib/libdnnl.so.3")],
        libraries=["dnnl"],
        extra_compile_args=["-std=c++17", "-O2", "-fopenmp", "-Wno-attributes"],
        extra_link_args=["-fopenmp"],
        optional=True,
    ) for name in ("conv", "rnn")] + [Extension(  # im2col for the GEMM convolutions (funcnets.nn._patches)
        "funcnets._im2col",
        sources=["src/funcnets/csrc/im2col.cc"],
        include_dirs=[jax.ffi.include_dir()],
        extra_compile_args=["-std=c++17", "-O2", "-fopenmp", "-Wno-attributes"],
        extra_link_args=["-fopenmp"],
        optional=True,
    )]


setup(ext_modules=_extensions())
