package dev.exeunt.model.tokenizer;

import java.util.Arrays;

/** Growable int array. */
final class IntList {
    int[] a;
    int size;

    IntList() {
        this(16);
    }

    IntList(int cap) {
        a = new int[Math.max(1, cap)];
    }

    void add(int v) {
        if (size == a.length) a = Arrays.copyOf(a, a.length * 2);
        a[size++] = v;
    }

    void addAll(int[] vs) {
        if (size + vs.length > a.length) a = Arrays.copyOf(a, Math.max(a.length * 2, size + vs.length));
        System.arraycopy(vs, 0, a, size, vs.length);
        size += vs.length;
    }

    int[] toArray() {
        return Arrays.copyOf(a, size);
    }
}
