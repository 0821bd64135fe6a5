# nastools GPU image: NVIDIA's TensorRT base (CUDA, cuDNN, TensorRT and its Python bindings),
# torch, onnxruntime-gpu, and nastools with the `gpu` and `dev` extras, its test suite and its
# Makefile in /opt/nastools. The entrypoint is `nastools`.
#
#   docker build -t nastools .
#   docker run --gpus all --rm -v "$PWD":/work \
#     -v /usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro \
#     nastools export --run fmnist --format trt --precision fp16
#   docker run --gpus all --rm -w /opt/nastools --entrypoint make nastools gpu-check          # every GPU path
#   docker run --gpus all --rm -w /opt/nastools --entrypoint python3 nastools -m pytest -m gpu  # the GPU tests
# (README, "Running on a GPU host with Docker": the dataset and report mounts)
FROM nvcr.io/nvidia/tensorrt:25.10-py3

# PIP_BREAK_SYSTEM_PACKAGES: the base image's Python is the system one (PEP 668)
ENV PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NASTOOLS_CACHE=/tmp/nastools-cache

# make runs gpu-check; the base image ships it for TensorRT's samples, else it comes from the distribution.
# DL3008: only installed where the base lacks it, at the distribution's version of the base.
# hadolint ignore=DL3008
RUN command -v make >/dev/null \
    || { apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*; }

WORKDIR /opt/nastools
COPY pyproject.toml README.md Makefile ./
COPY nastools ./nastools
COPY tests ./tests
COPY benchmarks ./benchmarks
# torch first (CUDA wheels from PyPI), then nastools with the `gpu` extra (onnxruntime-gpu,
# tensorrt) and the `dev` one (pytest, hypothesis, hadolint, ruff). The base image's tensorrt
# satisfies the extra and is pinned, so that pip never replaces it with another version from PyPI.
# onnxruntime (a dependency) and onnxruntime-gpu (the extra) install the same onnxruntime module:
# onnxruntime-gpu is reinstalled last, so that its build (with the CUDA provider) is the one imported,
# and the build fails unless that provider is there.
# DL3013: "." is this source tree (its version is the checkout), not a registry package.
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1" \
    && python3 -c "import tensorrt; print('tensorrt==' + tensorrt.__version__)" > /tmp/trt-pin.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/trt-pin.txt ".[gpu,dev]" \
    && ORT_GPU="$(python3 -c "from importlib.metadata import version; print(version('onnxruntime-gpu'))")" \
    && python3 -m pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu==${ORT_GPU}" \
    && python3 -c "import tensorrt, nastools.export; from nastools.runtime.onnxrt import cuda_provider_missing as m; \
assert not m(), m(); print('TensorRT', tensorrt.__version__, 'onnxruntime-gpu', '${ORT_GPU}')"

WORKDIR /work
ENTRYPOINT ["nastools"]
CMD ["--help"]
