package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Set;
import org.junit.jupiter.api.Test;

/** The layout flags: Megatron's spellings as aliases, the engine, and dp against the world size. */
class RankLayoutTest {
    private static RankLayout parse(String... argv) {
        var a = new Args(argv, Set.of());
        var l = RankLayout.parse(a);
        a.checkAllUsed();
        return l;
    }

    @Test
    void megatronSpellingsAreAliases() {
        var l = parse("--tensor-model-parallel-size", "2", "--data-parallel-size", "3", "--engine", "local");
        assertEquals(new RankLayout(RankLayout.Engine.LOCAL, 2, 3), l);
        assertEquals(new RankLayout(RankLayout.Engine.LOCAL, 2, 3), parse("--tp", "2", "--dp", "3", "--engine", "local"));
        assertEquals(3, parse("--tp", "2", "--tensor-model-parallel-size", "2", "--dp", "3", "--engine", "local").localDp());
        var e = assertThrows(Args.UsageException.class, () -> parse("--tp", "2", "--tensor-model-parallel-size", "4"));
        assertTrue(e.getMessage().contains("--tp 2 and --tensor-model-parallel-size 4 disagree"), e.getMessage());
        assertThrows(Args.UsageException.class, () -> parse("--engine", "nccl"));
        assertThrows(IllegalArgumentException.class, () -> parse("--dp", "0"));
        assertThrows(IllegalArgumentException.class, () -> parse("--tp", "-1"));
    }

    @Test
    void dpIsWhatTheWorldLeavesAndAGivenDpMustAgree() {
        assertEquals(1, parse("--engine", "local").localDp());
        assertEquals(4, new RankLayout(RankLayout.Engine.MPI, 2, 0).dpIn(8));
        assertEquals(4, new RankLayout(RankLayout.Engine.MPI, 2, 4).dpIn(8));
        var e = assertThrows(IllegalArgumentException.class, () -> new RankLayout(RankLayout.Engine.MPI, 2, 3).dpIn(8));
        assertTrue(e.getMessage().contains("--dp 3 does not match the world: 8 processes / --tp 2 = 4"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new RankLayout(RankLayout.Engine.MPI, 2, 0).dpIn(3));
        assertTrue(e.getMessage().contains("world size 3 is not divisible by --tp 2"), e.getMessage());
    }
}
