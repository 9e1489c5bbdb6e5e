package dev.exeunt.ffm.loader;

/**
 * A native call returned a failure status. Subclasses exist per library ({@code CudaException}, {@code CublasException},
 * ...); the message carries the library's own error string.
 */
public class NativeCallException extends RuntimeException {
    private final String library;
    private final String call;
    private final int status;

    public NativeCallException(String library, String call, int status, String errorString) {
        super(call + " failed: " + library + " status " + status + " (" + errorString + ")");
        this.library = library;
        this.call = call;
        this.status = status;
    }

    /** The library that reported the error, e.g. {@code "cudart"}. */
    public String library() {
        return library;
    }

    /** The call that failed, as given to {@code check}. */
    public String call() {
        return call;
    }

    /** The raw status code (cudaError_t, CUresult, nvrtcResult, cublasStatus_t, ncclResult_t or MPI error code). */
    public int status() {
        return status;
    }
}
