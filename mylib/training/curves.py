"""PNG plots of a run's metrics log: training loss and learning rate per iteration, val mIoU per epoch."""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_path  # noqa: E402


def plot_curves(records, path):
    """Write the curves of `records` (the metrics log) to `path` (PNG), atomically."""
    steps = [record for record in records if 'loss' in record]
    validations = [record for record in records if 'val_miou' in record]
    figure, (loss_axes, lr_axes, miou_axes) = plt.subplots(1, 3, figsize=(15, 4))
    loss_axes.plot([r['iteration'] for r in steps], [r['loss'] for r in steps])
    loss_axes.set(title='training loss', xlabel='iteration', ylabel='cross-entropy')
    lr_axes.plot([r['iteration'] for r in steps], [r['lr'] for r in steps])
    lr_axes.set(title='learning rate (poly)', xlabel='iteration')
    miou_axes.plot([r['epoch'] for r in validations], [100 * r['val_miou'] for r in validations], marker='o')
    miou_axes.set(title='validation mIoU', xlabel='epoch', ylabel='mIoU %')
    for axes in (loss_axes, lr_axes, miou_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=80)
    plt.close(figure)
