"""Speed benchmarks of the encoder and the live pipeline (`python main.py bench`).

- `timing`:   interleaved timing, percentiles, the machine's matrix-multiply peak;
- `scene`:    the workloads: realistic windows, and a crowd of continuous walkers to replay;
- `encoder`:  reference `SGELA.age` against the fast path (onnxruntime), and the training step;
- `pipeline`: frames through the whole live pipeline, frame-to-decision latency, CPU, memory;
- `report`:   all of it as one JSON result and a text summary;
- `search`:   identification against galleries of 1k-1M walks: exact scans against an HNSW index
              (`python main.py bench search`); `soak`: nothing leaks (`python main.py soak`).
"""
