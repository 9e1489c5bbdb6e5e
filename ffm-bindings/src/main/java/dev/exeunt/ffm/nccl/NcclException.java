package dev.exeunt.ffm.nccl;

import dev.exeunt.ffm.loader.NativeCallException;

/** An NCCL call returned an {@code ncclResult_t} other than ncclSuccess. */
public final class NcclException extends NativeCallException {
    public NcclException(String call, int status, String errorString) {
        super("nccl", call, status, errorString);
    }
}
