package dev.exeunt.model.tune;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.PipelineStage;
import java.util.List;

/**
 * Which part of the backbone EE-Tuning needs (EARLY-EXIT.md section 4): the layers up to the deepest
 * exit's input, and under pipeline parallelism the stages up to and including the last one that holds an
 * exit. The stages past it hold no exit and nothing flows back to them (the backbone is frozen), so they
 * are neither loaded nor started.
 */
public final class TuningStages {
    private TuningStages() {}

    /** Layers of the backbone the exits read: the deepest exit's input (an mlp exit's own layer). */
    public static int depth(List<ExitConfig> exits) {
        int d = 0;
        for (ExitConfig e : exits) d = Math.max(d, e.kind() == ExitKind.MLP ? e.layer() : e.inputDepth());
        return d;
    }

    /** How many of {@code stages} (a pipeline split, in stage order) run: up to the last that owns an exit. */
    public static int running(List<ExitConfig> exits, List<PipelineStage> stages) {
        int last = -1;
        for (ExitConfig e : exits) {
            for (PipelineStage s : stages) if (s.owns(e)) last = Math.max(last, s.index());
        }
        if (last < 0) throw new IllegalArgumentException("no pipeline stage holds any of the exits " + exits);
        return last + 1;
    }
}
