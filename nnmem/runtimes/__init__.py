"""Memory as the serving runtimes allocate it: vLLM and llama.cpp (Ollama, LM Studio).

- :mod:`nnmem.runtimes.kvspec`: the per-layer KV cache spec of a decoder.
- :mod:`nnmem.runtimes.gguf_types`: GGUF tensor types and llama.cpp's quantization mixtures.
- :mod:`nnmem.runtimes.llamacpp`: llama.cpp's model, KV, output and compute buffers, ``-ngl``.
- :mod:`nnmem.runtimes.vllm`: vLLM's KV budget, block pool and concurrency.
- :mod:`nnmem.runtimes.models`: the models they are given.
"""
