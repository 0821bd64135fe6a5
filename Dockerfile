# nastools GPU image: NVIDIA's TensorRT base (CUDA, cuDNN, TensorRT and its Python bindings),
# torch, and nastools with the `trt` extra. The entrypoint is `nastools`.
#
#   docker build -t nastools .
#   docker run --gpus all --rm -v "$PWD":/work \
#     -v /usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro \
#     nastools export --run fmnist --format trt --precision fp16
FROM nvcr.io/nvidia/tensorrt:25.10-py3

# PIP_BREAK_SYSTEM_PACKAGES: the base image's Python is the system one (PEP 668)
ENV PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NASTOOLS_CACHE=/tmp/nastools-cache

WORKDIR /opt/nastools
COPY pyproject.toml README.md ./
COPY nastools ./nastools
# torch first (CUDA wheels from PyPI), then nastools; the base image's tensorrt satisfies [trt]
# and is pinned, so that pip never replaces it with another major version from PyPI.
# DL3013: "." is this source tree (its version is the checkout), not a registry package.
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1" \
    && python3 -c "import tensorrt; print('tensorrt==' + tensorrt.__version__)" > /tmp/trt-pin.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/trt-pin.txt ".[trt]" \
    && python3 -c "import tensorrt, nastools.export; print('TensorRT', tensorrt.__version__)"

WORKDIR /work
ENTRYPOINT ["nastools"]
CMD ["--help"]
