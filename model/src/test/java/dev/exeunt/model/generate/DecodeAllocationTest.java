package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Once the JIT has compiled it, decoding allocates next to nothing per token on the calling thread, in every weight
 * type, after a prompt pass long enough for the blocked GEMM. A kernel that C2 compiles past its inlining budget runs
 * the Vector API's Java fallback, which boxes every vector it makes and runs several times slower while every result
 * stays right, so no other test notices; allocation is counted, not time, so the check holds on any machine. It does
 * not reproduce every such case: a Q4_0 row kernel that fell back only on the full llama-110m model after a prompt
 * pass (265 MB a token, decode at a quarter of its speed) passed here; {@code bench decode} warns on its own runs.
 */
@ExtendWith(LeakCheck.class)
class DecodeAllocationTest {
    /** Rounds of decoding allowed before the JIT must have settled (C2 had compiled every kernel by the 20th here; the rest is slack for a loaded machine compiling slowly). */
    private static final int ROUNDS = 150;
    private static final int TOKENS = 120;
    /** Per token on this model: about 10 KB when compiled (pool jobs, result lists); a boxed kernel, hundreds of KB. */
    private static final long LIMIT_BYTES_PER_TOKEN = 48 << 10;

    @Test
    void aCompiledDecodeAllocatesLittlePerTokenInEveryWeightType() {
        var bean = ManagementFactory.getThreadMXBean();
        assumeTrue(bean instanceof com.sun.management.ThreadMXBean mx && mx.isThreadAllocatedMemoryEnabled(),
                "this JVM does not count a thread's allocations");
        var mx = (com.sun.management.ThreadMXBean) bean;
        ModelConfig mc = ModelConfig.llama(256, 128, 2, 4, 2, 256, 512, List.of());
        int[] prompt = new int[DecodeMath.PROMPT_GEMM_ROWS + 9];
        for (int i = 0; i < prompt.length; i++) prompt[i] = (13 * i + 5) % 256;
        try (var f32 = EarlyExitModel.create(mc, Device.CPU, 3)) {
            for (DType type : new DType[] {DType.F32, DType.Q8_0, DType.Q4_0}) {
                try (var quantized = type == DType.F32 ? null : LeanDecodeTest.quantized(f32, type)) {
                    var gen = new Generator(quantized == null ? f32 : quantized);
                    List<Long> perToken = new ArrayList<>();
                    for (int round = 0; round < ROUNDS; round++) {
                        long before = mx.getCurrentThreadAllocatedBytes();
                        gen.generate(List.of(prompt), GenerationConfig.greedy(TOKENS), TokenListener.NONE);
                        long bytes = (mx.getCurrentThreadAllocatedBytes() - before) / TOKENS;
                        perToken.add(bytes);
                        if (bytes < LIMIT_BYTES_PER_TOKEN) break;
                    }
                    if (perToken.getLast() >= LIMIT_BYTES_PER_TOKEN) {
                        fail(type + " decode still allocated " + perToken.getLast() + " bytes a token after " + ROUNDS
                                + " rounds (per round: " + perToken + "): a kernel runs the Vector API's Java fallback");
                    }
                }
            }
        }
    }
}
