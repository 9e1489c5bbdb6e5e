package dev.exeunt.ffm.cuda;

import dev.exeunt.ffm.loader.NativeCallException;

/** A CUDA runtime ({@code cudaError_t}, library "cudart") or driver ({@code CUresult}, library "cuda") call failed. */
public final class CudaException extends NativeCallException {
    public CudaException(String library, String call, int status, String errorString) {
        super(library, call, status, errorString);
    }
}
