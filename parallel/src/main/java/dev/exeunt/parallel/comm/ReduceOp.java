package dev.exeunt.parallel.comm;

/** Reductions a {@link ProcessGroup} offers: element-wise over the ranks' buffers. */
public enum ReduceOp {
    SUM,
    MAX
}
