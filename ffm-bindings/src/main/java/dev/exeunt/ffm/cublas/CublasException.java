package dev.exeunt.ffm.cublas;

import dev.exeunt.ffm.loader.NativeCallException;

/** A cuBLAS call returned a {@code cublasStatus_t} other than CUBLAS_STATUS_SUCCESS. */
public final class CublasException extends NativeCallException {
    public CublasException(String call, int status, String errorString) {
        super("cublas", call, status, errorString);
    }
}
