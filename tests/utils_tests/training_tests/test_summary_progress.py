"""The schedule line says the rates the trainer really sets (a warm-up
longer than the run is flagged), and the plain progress printer prints at
once, without escape codes, with one estimate of the whole run."""
import io
import types

from utils.training.defaults import default_settings
from utils.training.progress import PlainProgress, WithoutEscapes
from utils.training.summary import schedule_lines
from utils.training.trainer import Schedule


def _schedule(iteration, steps, warmup):
    return Schedule(iteration, 0.0025, tuple(steps), warmup, 10 ** 6, 10 ** 6,
                    20)


def test_a_warmup_that_outlasts_the_run_is_flagged():
    # The trial's run: 220 iterations, Detectron's 500 warm-up, steps at
    # 146 and 195. The rate peaks just before the first step (0-based
    # 145): 0.0025 * (1/3 * (1 - 145/500) + 145/500) = 0.0013167.
    lines = schedule_lines(_schedule(220, (146, 195), 500))
    assert lines[0].endswith('highest rate 0.00132 at iteration 146')
    assert lines[1:] == [
        'warning: --lr-steps 146 195 fall inside the 500-iteration warm-up',
        'warning: the rate never reaches --lr 0.0025 (at most 0.00132): '
        'shorten --warmup 500 or move --lr-steps later']


def test_cosine_warns_only_when_the_warmup_costs_a_fifth():
    # Cosine from 0 under a linear warm-up from lr / 3, by hand:
    # lr (1/3 + 2/3 i / W) (1 + cos(pi i / T)) / 2 before W. W / T = 0.2
    # peaks at 0.905 lr at i = W (quiet); W / T = 0.5 at 0.584 lr at
    # i = 97 (warned, without the --lr-steps advice cosine ignores).
    def lines(warmup):
        return schedule_lines(Schedule(300, 0.01, (200, 266), warmup,
                                       10 ** 6, 10 ** 6, 20, 'cosine'))
    assert len(lines(60)) == 1 and 'highest rate 0.00905' in lines(60)[0]
    assert lines(150)[1:] == ['warning: the rate never reaches --lr 0.01 '
                              '(at most 0.00584): shorten --warmup 150']


def test_default_warmup_and_steps_scale_to_a_short_run():
    d = default_settings(False, 2, iteration=220, pretrained=False)
    assert (d['warmup'], d['lr_steps']) == (44, [146, 195])
    assert schedule_lines(_schedule(220, d['lr_steps'], d['warmup'])) == [
        'schedule: 220 iterations at lr 0.0025; warm-up over 44 from '
        '0.000833; x0.1 at 146 (to 0.00025); x0.1 at 195 (to 2.5e-05); '
        'highest rate 0.0025 at iteration 45']


def test_progress_lines_and_one_estimate():
    times = iter([0., 5., 7., 9., 11., 13.])
    out = io.StringIO()
    progress = PlainProgress(100, interval=2, out=out,
                             clock=lambda: next(times))
    trainer = types.SimpleNamespace(updater=types.SimpleNamespace(
        iteration=0))
    progress.initialize(trainer)
    for it in range(1, 6):
        trainer.updater.iteration = it
        progress(trainer)
    assert out.getvalue().splitlines() == [
        'training: iterations 1 to 100, a progress line every 2',
        'iteration 1 of 100 done in 5.0 s (with the set-up)',
        'iteration 2 of 100 (2%), 2 s per iteration, about 0:03:16 left',
        'estimate: 2 s per iteration, 100 iterations take about 0:03:20; '
        '--iteration that fits 20 min 600, 1 h 1800, 8 h 14400',
        'iteration 4 of 100 (4%), 2 s per iteration, about 0:03:12 left']


def test_print_report_stream_drops_the_erase_escape():
    out = io.StringIO()
    stream = WithoutEscapes(out)
    for text in ('\033[J', 'iteration  lr\n', '\033[J', '1  0.01\n'):
        stream.write(text)
    assert out.getvalue() == 'iteration  lr\n1  0.01\n'
