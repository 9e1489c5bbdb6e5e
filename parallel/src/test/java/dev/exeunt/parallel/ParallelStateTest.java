package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@ExtendWith(LeakCheck.class)
class ParallelStateTest {

    /** Each rank's groups hold exactly the world ranks Megatron's initialize_model_parallel puts in them. */
    @ParameterizedTest(name = "tp {0} x dp {1} x pp {2}")
    @CsvSource({"2,2,2", "1,1,1", "4,1,1", "1,4,1", "1,1,4", "2,1,3", "1,2,3", "3,2,1", "2,2,1", "1,2,2"})
    void groupsMatchMegatronsFormulas(int tp, int dp, int pp) {
        int world = tp * dp * pp;
        MegatronGroups want = new MegatronGroups(world, tp, pp);
        LocalWorld.runEach(world, pg -> {
            int r = pg.rank();
            try (ParallelState ps = ParallelState.create(pg, tp, dp, pp)) {
                assertEquals(r % tp, ps.tpRank());
                assertEquals(r / tp % dp, ps.dpRank());
                assertEquals(r / (tp * dp), ps.ppRank());
                assertEquals(List.of(tp, dp, pp), List.of(ps.tpSize(), ps.dpSize(), ps.ppSize()));
                assertEquals(ps.ppRank() == 0, ps.isFirstStage());
                assertEquals(ps.ppRank() == pp - 1, ps.isLastStage());
                expectMembers("tp", ps.tpGroup(), r, MegatronGroups.containing(want.tensor, r));
                expectMembers("dp", ps.dpGroup(), r, MegatronGroups.containing(want.data, r));
                expectMembers("pp", ps.ppGroup(), r, MegatronGroups.containing(want.pipeline, r));
                expectMembers("model-parallel", ps.modelParallelGroup(), r, MegatronGroups.containing(want.model, r));
                List<Integer> embedding = MegatronGroups.containing(want.embedding, r);
                assertEquals(embedding != null, ps.inEmbeddingGroup(), "rank " + r + " embedding membership");
                if (embedding != null) {
                    expectMembers("embedding", ps.embeddingGroup(), r, embedding);
                } else {
                    IllegalStateException e = assertThrows(IllegalStateException.class, ps::embeddingGroup);
                    assertTrue(e.getMessage().contains("middle stage"), e.getMessage());
                }
            }
        });
    }

    /** The group's size, this rank's place in it and, gathered over the group itself, its members' world ranks. */
    private static void expectMembers(String name, ProcessGroup g, int worldRank, List<Integer> members) {
        assertEquals(members.size(), g.size(), name + " group size on rank " + worldRank);
        assertEquals(members.indexOf(worldRank), g.rank(), name + " group rank of world rank " + worldRank);
        try (Tensor mine = Tensor.ofInts(new int[] {worldRank}); Tensor all = Tensor.empty(DType.I32, g.size())) {
            g.allGather(mine, all);
            assertEquals(members, Arrays.stream(all.toIntArray()).boxed().toList(), name + " group members seen from rank " + worldRank);
        }
    }

    /** The group lists as megatron/core/parallel_state.py builds them (its loops, transcribed). */
    private static final class MegatronGroups {
        final List<List<Integer>> tensor = new ArrayList<>();
        final List<List<Integer>> data = new ArrayList<>();
        final List<List<Integer>> pipeline = new ArrayList<>();
        final List<List<Integer>> model = new ArrayList<>();
        final List<List<Integer>> embedding = new ArrayList<>();

        MegatronGroups(int world, int tp, int pp) {
            int dp = world / (tp * pp);
            for (int i = 0; i < world / tp; i++) tensor.add(range(i * tp, (i + 1) * tp, 1));
            for (int i = 0; i < pp; i++) {
                int start = i * (world / pp), end = (i + 1) * (world / pp);
                for (int j = 0; j < tp; j++) data.add(range(start + j, end, tp));
            }
            for (int i = 0; i < dp; i++) {
                List<Integer> ranks = new ArrayList<>();
                for (List<Integer> d : data) ranks.add(d.get(i));
                model.add(ranks);
            }
            int pipelineGroups = world / pp;
            for (int i = 0; i < pipelineGroups; i++) {
                List<Integer> ranks = range(i, world, pipelineGroups);
                pipeline.add(ranks);
                embedding.add(ranks.size() > 1 ? List.of(ranks.getFirst(), ranks.getLast()) : ranks);
            }
        }

        static List<Integer> range(int start, int end, int step) {
            List<Integer> l = new ArrayList<>();
            for (int i = start; i < end; i += step) l.add(i);
            return l;
        }

        static List<Integer> containing(List<List<Integer>> groups, int rank) {
            return groups.stream().filter(g -> g.contains(rank)).findFirst().orElse(null);
        }
    }

    @Test
    void aWorldThatIsNotTheLayoutsProductFailsNamingTheNumbers() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(6, pg -> ParallelState.create(pg, 4, 1)));
        assertTrue(e.getMessage().endsWith("IllegalArgumentException: world size 6 is not divisible by tp 4"), e.getMessage());
        e = assertThrows(CommException.class, () -> LocalWorld.runEach(6, pg -> ParallelState.create(pg, 2, 2)));
        assertTrue(e.getMessage().endsWith("world size 6 is not divisible by tp 2 x pp 2 = 4"), e.getMessage());
        e = assertThrows(CommException.class, () -> LocalWorld.runEach(6, pg -> ParallelState.create(pg, 2, 2, 2)));
        assertTrue(e.getMessage().endsWith("world size 6 is not tp 2 x dp 2 x pp 2 = 8"), e.getMessage());
        e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> ParallelState.create(pg, 0, 2)));
        assertTrue(e.getMessage().endsWith("tp must be >= 1, got 0"), e.getMessage());
    }

    @Test
    void deriveDataParallelSizeFromTheWorld() {
        LocalWorld.runEach(6, pg -> {
            try (ParallelState ps = ParallelState.create(pg, 3, 1)) {
                assertEquals(2, ps.dpSize());
                assertEquals(pg.rank() / 3, ps.dpRank());
            }
        });
    }

    @Test
    void modelsTheLayoutCannotShardAreRefusedNamingEveryProblem() {
        ModelConfig gpt2 = ModelConfig.gpt2(50257, 768, 12, 12, 1024, List.of());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ParallelState.checkModel(gpt2, 8, 16));
        assertEquals("layout tp 8 x pp 16 cannot shard this model: n_heads 12 is not divisible by tp 8; "
                + "n_kv_heads 12 is neither divisible by tp 8 nor a divisor of it (kv heads are split when tp divides them, "
                + "replicated when they divide tp); vocab_size 50257 is not divisible by tp 8 (the vocabulary is not padded, "
                + "so that checkpoints keep their shapes); pp 16 exceeds n_layers 12 (every stage needs a layer)", e.getMessage());

        ModelConfig llama = ModelConfig.llama(32000, 256, 4, 8, 2, 688, 128, List.of());
        ParallelState.checkModel(llama, 2, 4); // kv heads split 1 per rank
        ParallelState.checkModel(llama, 4, 1); // kv heads replicated on 2 ranks each
        ParallelState.checkModel(llama, 8, 1); // and on 4
        e = assertThrows(IllegalArgumentException.class, () -> ParallelState.checkModel(llama, 16, 1));
        assertTrue(e.getMessage().contains("n_heads 8 is not divisible by tp 16"), e.getMessage());
        ModelConfig llama3kv = ModelConfig.llama(32004, 384, 4, 12, 3, 1024, 128, List.of());
        e = assertThrows(IllegalArgumentException.class, () -> ParallelState.checkModel(llama3kv, 2, 1));
        assertTrue(e.getMessage().contains("n_kv_heads 3 is neither divisible by tp 2 nor a divisor of it"), e.getMessage());
        ModelConfig oddFfn = ModelConfig.llama(32000, 256, 4, 8, 8, 690, 128, List.of());
        e = assertThrows(IllegalArgumentException.class, () -> ParallelState.checkModel(oddFfn, 4, 1));
        assertEquals("layout tp 4 x pp 1 cannot shard this model: ffn_hidden 690 is not divisible by tp 4", e.getMessage());
    }

    @Test
    void validateChecksTheModelAgainstThisLayout() {
        ModelConfig small = ModelConfig.gpt2(64, 32, 2, 4, 16, List.of());
        LocalWorld.runEach(4, pg -> {
            try (ParallelState ps = ParallelState.create(pg, 2, 2)) {
                ps.validate(small);
                assertFalse(ps.toString().isEmpty());
            }
            try (ParallelState ps = ParallelState.create(pg, 4, 1)) {
                ps.validate(small);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> ps.validate(ModelConfig.gpt2(66, 32, 2, 4, 16, List.of())));
                assertTrue(e.getMessage().contains("vocab_size 66 is not divisible by tp 4"), e.getMessage());
            }
        });
    }
}
