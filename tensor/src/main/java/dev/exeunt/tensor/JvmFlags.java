package dev.exeunt.tensor;

/**
 * The JVM flags the engine needs, and the check that names them. The CPU kernels use the incubating
 * Vector API, which a JVM only has with {@code --add-modules jdk.incubator.vector}; without it the first
 * kernel would fail with a bare {@code NoClassDefFoundError: jdk/incubator/vector/Vector}.
 */
public final class JvmFlags {
    /** What to pass to {@code java} (the {@code ./exeunt} launcher does; Maven: surefire's argLine; Gradle: jvmArgs). */
    public static final String REQUIRED = "--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED "
            + "--add-opens=java.base/java.nio=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow";

    private JvmFlags() {}

    /** Whether this JVM has the Vector API module. */
    public static boolean hasVectorModule() {
        return ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent();
    }

    /** Thrown (as an Error, so a static initializer passes it on unwrapped) when the Vector API module is missing. */
    public static final class MissingJvmFlagsError extends LinkageError {
        MissingJvmFlagsError(String message) {
            super(message);
        }
    }

    /** Fails with a message naming the flags when the Vector API module is missing. */
    public static void requireVectorModule() {
        if (!hasVectorModule()) {
            throw new MissingJvmFlagsError("Exeunt's CPU kernels need the Vector API module, which this JVM was started without: "
                    + "run java with " + REQUIRED);
        }
    }
}
