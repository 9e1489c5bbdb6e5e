package dev.exeunt.parallel;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.util.function.BiConsumer;

/**
 * Sums of doubles over a group's ranks that every rank computes to the same bits: each rank's values
 * travel bit for bit (as I32 pairs through an all-gather) and every rank adds them in rank order. Used
 * for norms that must agree across ranks and keep double precision.
 */
public final class ExactSums {
    private ExactSums() {}

    /** The element-wise sum over ranks of {@code values}; {@code allGather} is the group's (input, output) all-gather. */
    public static double[] overRanks(double[] values, int ranks, BiConsumer<Tensor, Tensor> allGather) {
        int[] mine = new int[2 * values.length];
        for (int i = 0; i < values.length; i++) {
            long bits = Double.doubleToRawLongBits(values[i]);
            mine[2 * i] = (int) bits;
            mine[2 * i + 1] = (int) (bits >>> 32);
        }
        int[] all = allGatherInts(mine, ranks, allGather);
        double[] sums = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            for (int r = 0; r < ranks; r++) {
                int o = r * mine.length + 2 * i;
                sums[i] += Double.longBitsToDouble((all[o] & 0xFFFFFFFFL) | ((long) all[o + 1] << 32));
            }
        }
        return sums;
    }

    /** Every rank's {@code mine}, concatenated in rank order. */
    public static int[] allGatherInts(int[] mine, int ranks, BiConsumer<Tensor, Tensor> allGather) {
        try (var scope = Scope.open()) {
            Tensor in = Tensor.ofInts(mine, mine.length);
            Tensor out = Tensor.empty(DType.I32, Device.CPU, mine.length * ranks);
            allGather.accept(in, out);
            return out.toIntArray();
        }
    }
}
