package dev.exeunt.model.io;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A model or data file (safetensors, GGUF, Arrow token dataset) is malformed or does not match what
 * the reader expects. The message always names the file and, where it applies, the tensor, key or
 * column concerned.
 */
public class CheckpointFormatException extends IOException {
    private final Path file;

    public CheckpointFormatException(Path file, String message) {
        super(file + ": " + message);
        this.file = file;
    }

    public CheckpointFormatException(Path file, String message, Throwable cause) {
        super(file + ": " + message, cause);
        this.file = file;
    }

    /** The file that failed to parse (may be a directory for sharded checkpoints). */
    public Path file() {
        return file;
    }
}
