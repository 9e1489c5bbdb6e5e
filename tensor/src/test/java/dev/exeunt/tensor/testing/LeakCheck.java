package dev.exeunt.tensor.testing;

import dev.exeunt.tensor.HostMemory;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/** JUnit extension: every test must end with no tensor memory still allocated. */
public final class LeakCheck implements AfterEachCallback {
    @Override
    public void afterEach(ExtensionContext context) {
        HostMemory.assertNoLeaks();
    }
}
