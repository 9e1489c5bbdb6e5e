package dev.exeunt.tensor.autograd;

/**
 * Whether operations on this thread record the tape. Inference and frozen backbones run inside
 * {@code try (var g = GradMode.noGrad()) { ... }}.
 */
public final class GradMode implements AutoCloseable {
    private static final ThreadLocal<int[]> DISABLED = ThreadLocal.withInitial(() -> new int[1]);

    private GradMode() {}

    public static GradMode noGrad() {
        DISABLED.get()[0]++;
        return new GradMode();
    }

    public static boolean isEnabled() {
        return DISABLED.get()[0] == 0;
    }

    @Override
    public void close() {
        DISABLED.get()[0]--;
    }
}
