package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.comm.MpiJob;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * tp 2 x dp 2 as 4 real MPI processes (one JVM each) trains GPT-2 and Llama with exits of every kind
 * ({@link TensorParallelTrainingTest}'s models) to the one-rank losses, per step, and writes the one-rank
 * checkpoint (weights and moments, within {@link TensorParallelTrainingTest}'s tolerances). Llama also
 * runs sequence parallel. Skipped without mpirun, except in CI.
 */
class TensorParallelMpiTest {
    private static final Duration LIMIT = Duration.ofSeconds(180);

    @BeforeAll
    static void needsMpirun() {
        MpiJob.requireMpirun();
        TensorParallelTrainingTest.data();
    }

    @ParameterizedTest(name = "{0} sequence parallel {1}")
    @CsvSource({"gpt2, false", "llama, true"})
    void fourProcessesAtTp2Dp2TrainAsOneRank(String family, boolean sp, @TempDir Path dir) throws Exception {
        var mc = family.equals("gpt2") ? TensorParallelTrainingTest.gpt2() : TensorParallelTrainingTest.llama();
        var one = TensorParallelTrainingTest.trainRank(mc, TensorParallel.NONE, GradientSync.SINGLE, dir.resolve("one"));
        Path out = dir.resolve("mpi");
        MpiJob.Result job = MpiJob.run(TensorParallelMpiRank.class, 4, LIMIT, family, "2", Boolean.toString(sp), out.toString());
        System.out.println(family + " tp2 x dp2 over mpi: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        for (int r = 0; r < 4; r++) assertTrue(job.output().contains("rank " + r + " of 4: trained"), job::toString);
        List<String> log = Files.readAllLines(out.resolve(Trainer.LOG));
        assertEquals(3, log.size());
        for (int s = 0; s < 3; s++) {
            double[] a = one.steps().get(s), b = DataParallelTrainingTest.logged(log.get(s));
            // the log holds loss, final, exits..., grad norm; the recorded steps the same without the norm
            for (int i = 0; i < a.length; i++) {
                assertEquals(a[i], b[i], TensorParallelTrainingTest.LOSS_REL * Math.abs(a[i]) + 1e-6, family + " step " + s + ": " + log.get(s));
            }
        }
        TensorParallelTrainingTest.assertSameCheckpoint(dir.resolve("one"), out, family + " mpi");
    }
}
