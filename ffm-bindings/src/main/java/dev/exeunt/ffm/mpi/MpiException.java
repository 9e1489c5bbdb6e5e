package dev.exeunt.ffm.mpi;

import dev.exeunt.ffm.loader.NativeCallException;

/** An MPI call returned an error code other than MPI_SUCCESS (needs MPI_ERRORS_RETURN, which {@link Mpi#init} sets). */
public final class MpiException extends NativeCallException {
    public MpiException(String call, int status, String errorString) {
        super("mpi", call, status, errorString);
    }
}
