package dev.exeunt.cli;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.parallel.pipeline.BubbleFill;
import dev.exeunt.parallel.pipeline.OneFOneBRunner;
import java.nio.file.Path;

/**
 * {@code train}'s pipeline schedule options: EE-LLM's bubble filling ({@code --fill-bubbles [N]}, with
 * {@code --backward-forward-ratio R|measured}) and {@code --trace-schedule FILE} (a Chrome trace of the last
 * step). {@code fillCount} is null without filling and -1 for the default count; {@code ratio} null means
 * measured (stage times in the second step, fills fitted to them). {@code --defer-exits false} runs the exits in the forward (to measure what
 * deferral saves: the log's {@code stage_peak_mb}).
 */
record PipelineSchedule(Integer fillCount, Double ratio, Path trace, boolean deferExits) {
    static final String[] KEYS = {"fill-bubbles", "backward-forward-ratio", "trace-schedule", "defer-exits"};

    /** No filling, no trace, deferred exits. */
    static final PipelineSchedule DEFAULT = new PipelineSchedule(null, BubbleFill.DEFAULT_RATIO, null, true);

    static final String HELP = """
              --fill-bubbles [N]  with --pp: N extra micro-batches per phase (default int((P-1) r / (1 + r)))
                                  train the early stages and their exits in the 1F1B bubbles; drawn from the data
                                  after each global batch, logged as fill_micro_batches / fill_exit_losses; free
                                  in warm-up, at most one forward each in cool-down with >= 2P micro-batches
              --backward-forward-ratio R|measured  r for the fill counts (default 2); measured: every stage's
                                  forward and backward timed in step 2, and only the fills that fit those
                                  bubbles run (from step 3)
              --trace-schedule FILE  with --pp: the last step's timeline per stage as Chrome trace JSON
              --defer-exits false  with --pp: run exit heads in the forward, not right before the backward
                                  (their logits then live longer; compare the log's stage_peak_mb)
            """;

    static PipelineSchedule parse(Args a, int pp) {
        String fill = a.get("fill-bubbles", null), ratio = a.get("backward-forward-ratio", null), trace = a.get("trace-schedule", null);
        Integer count = null;
        if (fill != null && !fill.equals("false")) {
            if (fill.equals("true")) count = -1;
            else if (fill.matches("\\d{1,9}")) count = Integer.parseInt(fill);
            else throw new Args.UsageException("--fill-bubbles takes an optional count, got '" + fill + "'");
        }
        if (ratio != null && count == null) throw new Args.UsageException("--backward-forward-ratio only matters with --fill-bubbles");
        Double r = BubbleFill.DEFAULT_RATIO;
        if ("measured".equals(ratio)) {
            r = null;
        } else if (ratio != null) {
            try {
                r = Double.parseDouble(ratio);
            } catch (NumberFormatException e) {
                throw new Args.UsageException("--backward-forward-ratio expects a number or 'measured', got '" + ratio + "'");
            }
            if (!(r > 0) || r.isInfinite()) throw new Args.UsageException("--backward-forward-ratio must be positive, got " + ratio);
        }
        if (pp < 2 && count != null) throw new Args.UsageException("--fill-bubbles fills pipeline bubbles: it needs --pp 2 or more");
        if (pp < 2 && trace != null) throw new Args.UsageException("--trace-schedule traces the pipeline schedule: it needs --pp 2 or more");
        boolean defer = a.getBool("defer-exits", true);
        if (pp < 2 && !defer) throw new Args.UsageException("--defer-exits false is a pipeline schedule option: it needs --pp 2 or more");
        return new PipelineSchedule(count, r, trace == null ? null : Path.of(trace), defer);
    }

    /** Sets the runner up for a run whose last iteration is {@code lastIteration}. */
    void apply(OneFOneBRunner runner, EarlyExitModel model, int lastIteration) {
        if (fillCount != null && model.config().exits().isEmpty()) {
            throw new IllegalArgumentException("--fill-bubbles trains exits, and the model has none (give --exits)");
        }
        if (fillCount != null && ratio == null) runner.fillBubblesMeasured(fillCount, model);
        else if (fillCount != null) {
            int n = fillCount >= 0 ? fillCount : BubbleFill.defaultCount(model.stage().count(), ratio);
            runner.fillBubbles(new BubbleFill(n, ratio), model);
        }
        if (trace != null) runner.traceIteration(lastIteration, trace);
        runner.deferExits(deferExits);
    }

    /** What the console says about the fills. */
    String describe(OneFOneBRunner runner) {
        if (fillCount == null) return "";
        if (ratio == null) return "; bubble fills from step 3, fitted to the stage times measured in step 2";
        return String.format(java.util.Locale.ROOT, "; %d bubble-fill micro-batches per step (%d asked per phase, r = %.2g)",
                runner.fillMicroBatches(), runner.bubbleFill().count(), ratio);
    }
}
