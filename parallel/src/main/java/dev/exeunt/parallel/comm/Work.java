package dev.exeunt.parallel.comm;

/**
 * An asynchronous collective or point-to-point operation in flight. The operation keeps its own
 * references to the tensors' storage until it completes, so closing the caller's tensors (or the
 * scope that owns them) while it runs never lets another tensor's bytes be sent or overwritten.
 * ({@code wait()} is Object's, hence {@link #await()}.)
 */
public interface Work {
    /** Blocks until the operation completes; rethrows its failure (a {@link CommException}). */
    void await();

    /** Whether the operation has completed (successfully or not); never blocks. */
    boolean test();
}
