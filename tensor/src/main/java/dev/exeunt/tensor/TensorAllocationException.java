package dev.exeunt.tensor;

/**
 * Thrown when an allocation would exceed a memory limit (host or device). The message is one line
 * naming the size asked for, the memory in use, the limit and how to change it: the CLI prints it as
 * it is, without a stack trace.
 */
public class TensorAllocationException extends RuntimeException {
    public TensorAllocationException(String message) {
        super(message);
    }

    public TensorAllocationException(String message, Throwable cause) {
        super(message, cause);
    }
}
