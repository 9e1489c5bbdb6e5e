package dev.exeunt.model.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

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
        Path tmp = dir.resolve(FILE + ".tmp");
        JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), o);
        Files.move(tmp, dir.resolve(FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public static TrainingState read(Path dir) throws IOException {
        var o = JSON.readTree(dir.resolve(FILE).toFile());
        return new TrainingState(o.path("next_iter").asInt(), o.path("epoch").asInt(), o.path("step").asInt(),
                o.path("optimizer_steps").asInt(), o.path("last_loss").asDouble());
    }

    public static boolean exists(Path dir) {
        return Files.exists(dir.resolve(FILE)) && Files.exists(dir.resolve(OPTIMIZER));
    }
}
