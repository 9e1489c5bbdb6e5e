package dev.exeunt.tensor;

/** Thrown when an allocation would exceed the configured memory limit; carries the sizes involved. */
public class TensorAllocationException extends RuntimeException {
    public TensorAllocationException(String message, Throwable cause) {
        super(message, cause);
    }
}
