package dev.exeunt.model.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.io.CheckpointFormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where training stands, saved beside a checkpoint as {@code trainer_state.json} (the optimiser's
 * moments go to {@code optimizer.safetensors}): the next iteration, the data cursor and the optimiser
 * step count, which together let a resumed run continue the same loss curve.
 */
public record TrainingState(int nextIter, int epoch, int step, int optimizerSteps, double lastLoss) {
    public static final String FILE = "trainer_state.json";
    public static final String OPTIMIZER = "optimizer.safetensors";
    private static final ObjectMapper JSON = new ObjectMapper();

    public void write(Path dir) throws IOException {
        ObjectNode o = JSON.createObjectNode();
        o.put("next_iter", nextIter);
        o.put("epoch", epoch);
        o.put("step", step);
        o.put("optimizer_steps", optimizerSteps);
        o.put("last_loss", lastLoss);
        // Written into a staging directory that CheckpointStore fsyncs and publishes as a whole.
        JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve(FILE).toFile(), o);
    }

    public static TrainingState read(Path dir) throws IOException {
        Path file = dir.resolve(FILE);
        var o = JSON.readTree(file.toFile());
        for (String key : new String[] {"next_iter", "epoch", "step", "optimizer_steps"}) {
            if (o == null || !o.path(key).canConvertToInt()) {
                throw new CheckpointFormatException(file, "lacks the integer \"" + key + "\"");
            }
        }
        return new TrainingState(o.path("next_iter").asInt(), o.path("epoch").asInt(), o.path("step").asInt(),
                o.path("optimizer_steps").asInt(), o.path("last_loss").asDouble());
    }

    public static boolean exists(Path dir) {
        return Files.exists(dir.resolve(FILE)) && Files.exists(dir.resolve(OPTIMIZER));
    }
}
