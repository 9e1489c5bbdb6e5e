package dev.exeunt.ffm.loader;

import java.util.List;

/** A native library could not be found or opened. The message lists every place that was looked at. */
public final class NativeLibraryException extends RuntimeException {
    private final String libraryName;
    private final List<String> placesLooked;

    public NativeLibraryException(String libraryName, String message, List<String> placesLooked, Throwable cause) {
        super(message, cause);
        this.libraryName = libraryName;
        this.placesLooked = List.copyOf(placesLooked);
    }

    /** The library's base name, e.g. {@code "cublas"}. */
    public String libraryName() {
        return libraryName;
    }

    /** Each place that was tried, in order, with what was found there. */
    public List<String> placesLooked() {
        return placesLooked;
    }
}
