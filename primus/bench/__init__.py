"""`primus bench`: named workloads run side by side by several training systems.

Each system runs in its own process (its own CUDA context, patches and memory peak) and writes
a result file; the runner turns them into tokens/s, model TFLOP/s/GPU (one FLOP formula for all),
MFU against a matmul measured in the same invocation, peak memory and the first losses.
"""
