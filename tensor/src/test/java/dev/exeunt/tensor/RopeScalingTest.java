package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.exeunt.tensor.cpu.CpuRope;
import org.junit.jupiter.api.Test;

/** Scaled rotary frequencies against values transformers' formulas give (computed in float64 with numpy). */
class RopeScalingTest {
    @Test
    void llama3FrequenciesAreTransformers() {
        // Llama 3.1 8B: rope_theta 500000, head_dim 128, factor 8, low 1, high 4, original context 8192.
        // From transformers' _compute_llama3_parameters, run in numpy float64: indices in the kept (0, 20),
        // smoothed (40, 45) and interpolated (48, 50, 63) bands.
        double[] f = RopeScaling.llama3(8, 1, 4, 8192).invFreq(128, 500000);
        int[] at = {0, 20, 40, 45, 48, 50, 63};
        double[] want = {1.0, 0.016560440080994446, 3.428102195952591e-05, 1.2297638677963614e-05, 6.647869871181236e-06,
                4.411534674558404e-06, 3.068925988914511e-07};
        for (int k = 0; k < at.length; k++) assertEquals(want[k], f[at[k]], Math.abs(want[k]) * 1e-12, "inv_freq[" + at[k] + "]");
    }

    @Test
    void linearDividesAndNoneIsThePlainTable() {
        double[] plain = CpuRope.invFreq(64, 10000), none = RopeScaling.NONE.invFreq(64, 10000), lin = RopeScaling.linear(4).invFreq(64, 10000);
        for (int i = 0; i < plain.length; i++) {
            assertEquals(plain[i], none[i], 0);
            assertEquals(plain[i] / 4, lin[i], 1e-18);
        }
        assertThrows(IllegalArgumentException.class, () -> RopeScaling.linear(0.5));
        assertThrows(IllegalArgumentException.class, () -> RopeScaling.llama3(8, 4, 1, 8192));
    }
}
