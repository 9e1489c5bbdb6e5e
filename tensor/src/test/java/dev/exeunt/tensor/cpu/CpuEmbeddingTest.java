package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuEmbeddingTest {

    static double[] gatherRef(double[] table, int dim, int[] ids) {
        double[] out = new double[ids.length * dim];
        for (int i = 0; i < ids.length; i++) System.arraycopy(table, ids[i] * dim, out, i * dim, dim);
        return out;
    }

    static double[] scatterRef(double[] dOut, int vocab, int dim, int[] ids) {
        double[] d = new double[vocab * dim];
        for (int i = 0; i < ids.length; i++) for (int j = 0; j < dim; j++) d[ids[i] * dim + j] += dOut[i * dim + j];
        return d;
    }

    static int[] randIds(Random rnd, int n, int vocab) {
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = rnd.nextInt(vocab);
        return ids;
    }

    @Test
    void gatherAndScatterAddMatchFloat64() {
        var rnd = new Random(41);
        for (int dim : COLS) {
            for (int n : ROWS) {
                int vocab = 11;
                double[] table = rand(rnd, vocab * dim, -1, 1), dOut = rand(rnd, n * dim, -1, 1);
                int[] ids = randIds(rnd, n, vocab);
                var out = f32(n * dim);
                CpuEmbedding.gather(f32(table), OFF, vocab, dim, i32(ids), OFF, n, out, OFF);
                assertClose("gather " + n + "x" + dim, gatherRef(table, dim, ids), read(out, n * dim), 0, 0);

                double[] d0 = rand(rnd, vocab * dim, -1, 1);
                var dTable = f32(d0);
                CpuEmbedding.scatterAdd(f32(dOut), OFF, i32(ids), OFF, n, dTable, OFF, vocab, dim);
                double[] exp = scatterRef(dOut, vocab, dim, ids);
                for (int k = 0; k < exp.length; k++) exp[k] += d0[k];
                assertClose("scatterAdd (accumulated) " + n + "x" + dim, exp, read(dTable, vocab * dim), 1e-6, 1e-6);
            }
        }
    }

    @Test
    void scatterAddIsTheVjpOfGather() {
        var rnd = new Random(42);
        int vocab = 5, dim = 3;
        int[] ids = {4, 1, 4, 0, 4, 2};
        double[] table = rand(rnd, vocab * dim, -1, 1), dOut = rand(rnd, ids.length * dim, -1, 1);
        assertVjp("embedding", t -> gatherRef(t, dim, ids), table, dOut, scatterRef(dOut, vocab, dim, ids));
    }

    @Test
    void manyRepeatedIdsInParallelAreDeterministic() {
        var rnd = new Random(43);
        int vocab = 50, dim = 64, n = 3000;
        int[] ids = randIds(rnd, n, vocab);
        for (int i = 0; i < n; i += 3) ids[i] = 7; // one hot id
        double[] dOut = rand(rnd, n * dim, -1, 1);
        var d1 = f32(vocab * dim);
        var d2 = f32(vocab * dim);
        var dOutS = f32(dOut);
        var idS = i32(ids);
        CpuEmbedding.scatterAdd(dOutS, OFF, idS, OFF, n, d1, OFF, vocab, dim);
        CpuEmbedding.scatterAdd(dOutS, OFF, idS, OFF, n, d2, OFF, vocab, dim);
        double[] a = read(d1, vocab * dim);
        assertArrayEquals(a, read(d2, vocab * dim));
        // the order of additions per row is by position: equal to a sequential F32 loop, bitwise
        float[] seq = new float[vocab * dim];
        for (int i = 0; i < n; i++) for (int j = 0; j < dim; j++) seq[ids[i] * dim + j] += (float) dOut[i * dim + j];
        for (int k = 0; k < seq.length; k++) assertTrue(seq[k] == (float) a[k], "element " + k);
    }

    @Test
    void outOfRangeIdsAreRejectedBeforeWriting() {
        int vocab = 10, dim = 4;
        var table = f32(vocab * dim);
        var out = f32(3 * dim);
        for (int bad : new int[] {10, -1}) {
            var ex = assertThrows(IllegalArgumentException.class,
                    () -> CpuEmbedding.gather(table, OFF, vocab, dim, i32(new int[] {1, 2, bad}), OFF, 3, out, OFF));
            String m = ex.getMessage();
            assertTrue(m.contains("id " + bad) && m.contains("position 2") && m.contains("10"), m);
            var d = f32(vocab * dim);
            assertThrows(IllegalArgumentException.class,
                    () -> CpuEmbedding.scatterAdd(f32(3 * dim), OFF, i32(new int[] {1, 2, bad}), OFF, 3, d, OFF, vocab, dim));
        }
    }
}
