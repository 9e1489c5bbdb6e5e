package dev.exeunt.tensor.autograd;

import dev.exeunt.tensor.Tensor;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/** Reverse-mode sweep over the tape recorded behind a scalar (or seeded) output. */
public final class Backprop {
    private Backprop() {}

    /** Told about each leaf once this backward has accumulated its gradient. */
    @FunctionalInterface
    public interface LeafListener {
        void gradientAccumulated(Tensor leaf);
    }

    public static void run(Tensor root, Tensor seed) {
        run(root, seed, null);
    }

    /** The sweep; {@code listener} (or null) hears of each leaf right after its gradient was accumulated. */
    public static void run(Tensor root, Tensor seed, LeafListener listener) {
        List<Tensor> order = topologicalOrder(root);
        Map<Tensor, Tensor> grads = new IdentityHashMap<>();
        grads.put(root, seed);
        for (int i = order.size() - 1; i >= 0; i--) {
            Tensor t = order.get(i);
            Tensor g = grads.remove(t);
            if (g == null) continue;
            Node node = t.gradNode();
            if (node == null) {
                if (t.requiresGrad()) {
                    t.accumulateGrad(g);
                    if (listener != null) listener.gradientAccumulated(t);
                }
                continue;
            }
            Tensor[] inGrads = node.backward().apply(g);
            Tensor[] inputs = node.inputs();
            for (int k = 0; k < inputs.length; k++) {
                Tensor in = inputs[k];
                if (in == null || inGrads[k] == null || !in.requiresGrad()) continue;
                Tensor prev = grads.get(in);
                if (prev == null) {
                    grads.put(in, inGrads[k]);
                } else {
                    grads.put(in, prev.add(inGrads[k]));
                }
            }
        }
    }

    /** Inputs before outputs; iterative so deep graphs cannot overflow the stack. */
    private static List<Tensor> topologicalOrder(Tensor root) {
        List<Tensor> order = new ArrayList<>();
        Map<Tensor, Boolean> seen = new IdentityHashMap<>();
        ArrayDeque<Object[]> stack = new ArrayDeque<>();
        stack.push(new Object[] {root, 0});
        seen.put(root, true);
        while (!stack.isEmpty()) {
            Object[] top = stack.peek();
            Tensor t = (Tensor) top[0];
            int next = (int) top[1];
            Node node = t.gradNode();
            Tensor[] inputs = node == null ? new Tensor[0] : node.inputs();
            if (next < inputs.length) {
                top[1] = next + 1;
                Tensor in = inputs[next];
                if (in != null && in.requiresGrad() && seen.put(in, true) == null) stack.push(new Object[] {in, 0});
            } else {
                stack.pop();
                order.add(t);
            }
        }
        return order;
    }
}
