package dev.exeunt.parallel.comm;

/**
 * A communication failure: a bad argument (mismatched sizes, wrong dtype, rank out of range), an
 * engine error, or another rank's failure that ended the job. The message names the operation, the
 * rank and, for a peer's failure, that peer's own message.
 */
public class CommException extends RuntimeException {
    public CommException(String message) {
        super(message);
    }

    public CommException(String message, Throwable cause) {
        super(message, cause);
    }
}
