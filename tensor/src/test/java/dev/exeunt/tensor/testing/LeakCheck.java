package dev.exeunt.tensor.testing;

import dev.exeunt.tensor.HostMemory;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * JUnit extension: every test must end holding no more tensor memory than it started with (so a leak
 * is reported by the test that made it, not by every test after it).
 */
public final class LeakCheck implements BeforeEachCallback, AfterEachCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(LeakCheck.class);

    @Override
    public void beforeEach(ExtensionContext context) {
        context.getStore(NS).put("before", HostMemory.allocatedBytes());
    }

    @Override
    public void afterEach(ExtensionContext context) {
        long before = context.getStore(NS).get("before", Long.class);
        long now = HostMemory.allocatedBytes();
        if (now != before) {
            throw new IllegalStateException("test leaked " + (now - before) + " bytes of tensor memory ("
                    + before + " before, " + now + " after)");
        }
    }
}
