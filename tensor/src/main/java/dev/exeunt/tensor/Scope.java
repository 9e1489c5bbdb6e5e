package dev.exeunt.tensor;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * Frees intermediates deterministically: every tensor created on this thread while a scope is open
 * belongs to the innermost scope and is closed with it. Parameters are created outside scopes (or
 * moved out with {@link Tensor#escape()}) and live until closed.
 *
 * <pre>{@code
 * try (var scope = Scope.open()) {
 *     Tensor loss = model.loss(batch);
 *     loss.backward();
 * } // activations, graph and intermediate gradients are freed here
 * }</pre>
 */
public final class Scope implements AutoCloseable {
    private static final ThreadLocal<ArrayDeque<Scope>> STACK = ThreadLocal.withInitial(ArrayDeque::new);

    private final List<Tensor> owned = new ArrayList<>();
    private final Scope parent;
    private final boolean standalone;
    private boolean closed;

    private Scope(Scope parent) {
        this(parent, false);
    }

    private Scope(Scope parent, boolean standalone) {
        this.parent = parent;
        this.standalone = standalone;
    }

    /**
     * A scope on no thread's stack: it owns what is created while it is {@link #enter entered}, any number
     * of times, and frees it all when closed. For lifetimes that interleave instead of nesting, such as a
     * pipeline's microbatches, whose tensors live from their forward to their backward and are freed
     * first in, first out. Tensors escaping it become unowned.
     */
    public static Scope standalone() {
        return new Scope(null, true);
    }

    /** Makes this standalone scope the innermost one on this thread until the returned handle is closed. */
    public Entered enter() {
        if (!standalone) throw new IllegalStateException("only a standalone scope can be entered");
        if (closed) throw new IllegalStateException("this scope is closed");
        STACK.get().push(this);
        return () -> {
            var stack = STACK.get();
            if (stack.peek() != this) throw new IllegalStateException("scopes must be left innermost first");
            stack.pop();
        };
    }

    /** The handle of an {@link #enter}: closing it leaves the scope (and frees nothing). */
    @FunctionalInterface
    public interface Entered extends AutoCloseable {
        @Override
        void close();
    }

    public static Scope open() {
        var stack = STACK.get();
        var s = new Scope(current());
        stack.push(s);
        return s;
    }

    static Scope current() {
        Scope s = STACK.get().peek();
        return s == DETACHED ? null : s;
    }

    /** Marks a region where new tensors belong to no scope (the caller owns them). */
    private static final Scope DETACHED = new Scope(null);

    /** Runs {@code body} with no scope active, so the tensors it creates outlive every open scope. */
    public static <T> T outside(java.util.function.Supplier<T> body) {
        var stack = STACK.get();
        stack.push(DETACHED);
        try {
            return body.get();
        } finally {
            stack.pop();
        }
    }

    void register(Tensor t) {
        owned.add(t);
    }

    /** Moves {@code t} to the enclosing scope (or makes it unowned when there is none). */
    void release(Tensor t) {
        for (int i = owned.size() - 1; i >= 0; i--) {
            if (owned.get(i) == t) {
                owned.remove(i);
                break;
            }
        }
        if (parent != null) parent.register(t);
    }

    Scope parent() {
        return parent;
    }

    public int size() {
        return owned.size();
    }

    @Override
    public void close() {
        if (closed) return;
        var stack = STACK.get();
        if (standalone) {
            if (stack.contains(this)) throw new IllegalStateException("a standalone scope must be left before it is closed");
        } else {
            if (stack.peek() != this) throw new IllegalStateException("scopes must be closed innermost first");
            stack.pop();
        }
        closed = true;
        for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).closeStorage();
        owned.clear();
    }
}
