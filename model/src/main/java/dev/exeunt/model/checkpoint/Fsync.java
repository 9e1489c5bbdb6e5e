package dev.exeunt.model.checkpoint;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Locale;

/** fsync for files and directories: what makes a write or a rename survive a power cut, not only a process crash. */
final class Fsync {
    /** Windows cannot open a directory as a channel (and NTFS journals renames itself). */
    private static final boolean DIRECTORIES = !System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("windows");

    private Fsync() {}

    static void file(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    /** Makes the directory's entries (files created, renamed or deleted in it) durable. */
    static void directory(Path dir) throws IOException {
        if (!DIRECTORIES) return;
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }
}
