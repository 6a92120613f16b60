import torch

from nnmamba.train import checkpoint, losses


def test_dice_ce_loss_is_lower_for_the_right_labels_than_for_wrong_ones():
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6, 2:6] = 1
    right = torch.nn.functional.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 10
    wrong = torch.flip(right, dims=[1])
    assert losses.dice_ce_loss(right, target) < 0.01
    assert losses.dice_ce_loss(wrong, target) > 1.5


def test_checkpoint_restores_model_and_adam_state_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        optimizer.step()
    checkpoint.save_checkpoint(tmp_path, model, optimizer, {"step": 3, "elapsed_s": 1.5})

    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    clone_optimizer = torch.optim.Adam(clone.parameters(), lr=0.5)
    state = checkpoint.load_checkpoint(tmp_path, clone, clone_optimizer)
    assert state["step"] == 3 and state["elapsed_s"] == 1.5
    for a, b in zip(model.state_dict().values(), clone.state_dict().values()):
        assert torch.equal(a, b)
    assert clone_optimizer.param_groups[0]["lr"] == 0.01
    x = torch.randn(5, 4)
    for m, o in ((model, optimizer), (clone, clone_optimizer)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)
