package dev.exeunt.ffm.nvrtc;

import dev.exeunt.ffm.loader.NativeCallException;

/** An NVRTC call failed; for compilation failures {@link #log()} holds the compiler's log. */
public final class NvrtcException extends NativeCallException {
    private final String log;

    public NvrtcException(String call, int status, String errorString, String log) {
        super("nvrtc", call, status, log == null || log.isBlank() ? errorString : errorString + "\n" + log.strip());
        this.log = log == null ? "" : log;
    }

    public String log() {
        return log;
    }
}
