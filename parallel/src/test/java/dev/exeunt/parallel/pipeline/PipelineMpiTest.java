package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.parallel.comm.MpiJob;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The pipeline as real mpirun processes (one JVM per rank): 4 stages, and tp 2 x pp 2, trained 1 step,
 * saved, resumed for 2 more, give one rank's per-step losses (every rank reports them) and its
 * checkpoint, and no step leaves tensors behind. Skipped without mpirun,
 * except in CI.
 */
class PipelineMpiTest {
    private static final Duration LIMIT = Duration.ofSeconds(180);

    @BeforeAll
    static void needsMpirun() {
        MpiJob.requireMpirun();
        PipelineTrainingTest.data();
    }

    @ParameterizedTest(name = "{0} tp {1} pp {2}")
    @CsvSource({"gpt2, 1, 4", "llama, 2, 2"})
    void pipelineProcessesTrainAsOneRank(String family, int tp, int pp, @TempDir Path dir) throws Exception {
        var mc = family.equals("gpt2") ? PipelineTrainingTest.gpt2() : PipelineTrainingTest.llama();
        var one = PipelineTrainingTest.oneRank(mc, dir.resolve("one"));
        Path out = dir.resolve("mpi");
        MpiJob.Result job = MpiJob.run(PipelineMpiRank.class, 4, LIMIT, family, Integer.toString(tp), Integer.toString(pp), out.toString());
        System.out.println(family + " tp " + tp + " pp " + pp + " over mpi: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        for (int r = 0; r < 4; r++) {
            assertTrue(job.output().contains("rank " + r + " of 4: trained"), job::toString);
            for (int s = 0; s < 3; s++) {
                String prefix = "rank " + r + " step " + s + " losses [";
                int at = job.output().indexOf(prefix);
                assertTrue(at >= 0, job::toString);
                String list = job.output().substring(at + prefix.length(), job.output().indexOf(']', at));
                double[] got = Arrays.stream(list.split(",")).mapToDouble(x -> Double.parseDouble(x.trim())).toArray();
                double[] want = one.steps().get(s);
                for (int i = 0; i < want.length; i++) {
                    assertEquals(want[i], got[i], PipelineTrainingTest.LOSS_REL * Math.abs(want[i]), family + " rank " + r + " step " + s);
                }
            }
        }
        // Saved after step 1, resumed by every stage, saved again after step 3: the one-rank checkpoint.
        dev.exeunt.parallel.TensorParallelTrainingTest.assertSameCheckpoint(dir.resolve("one"), out, family + " mpi pipeline");
    }
}
