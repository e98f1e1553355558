"""The pieces of `bench/train_throughput.py` (the CLI), one job per module.

    common      setup and measurement: the synthetic batch, the bertjax runner (the real jitted train step), the
                jnp.dot peak, interleaved timing and paired ratios, the machine description
    peers       the other frameworks' runners: transformers (PyTorch) and KerasHub (JAX)
    grid        the comparison (default mode): bertjax vs the peers over sizes x seqs x dtypes, FLOPs and MFU
    ablations   --ablations: bertjax variants by config override, side by side
    breakdown   --breakdown: forward / forward+backward / optimizer update beside the full step
    op_profile  --profile: per-op thread time of the compiled step from a jax.profiler trace
    report      the outputs: STEM.json / STEM_<mode>.json and the markdown STEM.md rendered from them
"""
