package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.parallel.comm.MpiJob;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Validation under the pipeline as real mpirun processes (the activations and the final head's tokens
 * over MPI): 4 stages, and tp 2 x pp 2; every rank reports the one-rank validation (its JSON, printed
 * to 6 decimals) and rank 0's {@code eval_log.jsonl} is the one-rank log. Skipped without mpirun,
 * except in CI.
 */
class PipelineValidationMpiTest {
    private static final Duration LIMIT = Duration.ofSeconds(180);

    @BeforeAll
    static void needsMpirun() {
        MpiJob.requireMpirun();
        PipelineTrainingTest.data();
    }

    @ParameterizedTest(name = "{0} tp {1} pp {2}")
    @CsvSource({"gpt2, 1, 4", "llama, 2, 2"})
    void pipelineProcessesValidateAsOneRank(String family, int tp, int pp, @TempDir Path dir) throws Exception {
        var mc = family.equals("gpt2") ? PipelineTrainingTest.gpt2() : PipelineTrainingTest.llama();
        var one = PipelineValidationTest.oneRank(mc, dir.resolve("one"));
        Path out = dir.resolve("mpi");
        MpiJob.Result job = MpiJob.run(PipelineValidationMpiRank.class, 4, LIMIT, family, Integer.toString(tp), Integer.toString(pp),
                out.toString());
        System.out.println(family + " tp " + tp + " pp " + pp + " validation over mpi: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        for (int r = 0; r < 4; r++) {
            String prefix = "rank " + r + " eval ";
            int at = job.output().indexOf(prefix);
            assertTrue(at >= 0, job::toString);
            String got = job.output().substring(at + prefix.length(), job.output().indexOf('\n', at));
            PipelineValidationTest.assertSameJson(one.toJson(), got, family + " mpi rank " + r);
        }
        PipelineValidationTest.assertSameEvalLog(dir.resolve("one"), out, family + " mpi");
    }
}
