package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.exeunt.tensor.testing.LeakCheck;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Standalone scopes own what is made while entered, across entries, and free first-in first-out. */
@ExtendWith(LeakCheck.class)
class StandaloneScopeTest {
    @Test
    void interleavedLifetimesAreFreedInTheOrderTheOwnersClose() {
        long before = HostMemory.allocatedBytes();
        Scope first = Scope.standalone(), second = Scope.standalone();
        try (var e = first.enter()) {
            Tensor.zeros(256);
        }
        try (var e = second.enter()) {
            Tensor.zeros(512);
        }
        try (var e = first.enter()) { // entered again: still the same owner
            Tensor.zeros(256);
        }
        assertEquals(before + 4L * (256 + 512 + 256), HostMemory.allocatedBytes());
        first.close(); // first in, first out: the later owner's tensors stay
        assertEquals(before + 4L * 512, HostMemory.allocatedBytes());
        second.close();
        assertEquals(before, HostMemory.allocatedBytes());
        assertThrows(IllegalStateException.class, first::enter);
    }

    @Test
    void anEnteredScopeCannotBeClosedAndScopesAreLeftInnermostFirst() {
        Scope owner = Scope.standalone();
        var entered = owner.enter();
        assertThrows(IllegalStateException.class, owner::close);
        try (var inner = Scope.open()) {
            assertThrows(IllegalStateException.class, entered::close);
        }
        entered.close();
        owner.close();
        try (var plain = Scope.open()) {
            assertThrows(IllegalStateException.class, plain::enter); // only standalone scopes are entered
        }
    }
}
