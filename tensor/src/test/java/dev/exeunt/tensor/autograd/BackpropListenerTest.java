package dev.exeunt.tensor.autograd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The backward's leaf listener hears of each leaf once, after its whole gradient is in. */
@ExtendWith(LeakCheck.class)
class BackpropListenerTest {
    @Test
    void eachLeafIsReportedOnceWithItsWholeGradient() {
        try (var s = Scope.open()) {
            Tensor a = Tensor.of(new float[] {1, 2}, 2).requiresGrad(true);
            Tensor b = Tensor.of(new float[] {3, 4}, 2).requiresGrad(true);
            // a is used twice: d/da = b + 2a = {5, 8}, d/db = a = {1, 2}
            Tensor loss = Ops.sumAll(Ops.add(Ops.mul(a, b), Ops.mul(a, a)));
            List<Tensor> heard = new ArrayList<>();
            List<float[]> gradWhenHeard = new ArrayList<>();
            loss.backward(leaf -> {
                heard.add(leaf);
                gradWhenHeard.add(leaf.grad().toFloatArray());
            });
            assertEquals(2, heard.size());
            int ia = heard.get(0) == a ? 0 : 1;
            assertSame(a, heard.get(ia));
            assertSame(b, heard.get(1 - ia));
            assertArrayEquals(new float[] {5, 8}, gradWhenHeard.get(ia), 0f);
            assertArrayEquals(new float[] {1, 2}, gradWhenHeard.get(1 - ia), 0f);
            a.clearGrad();
            b.clearGrad();
        }
    }
}
