"""The "complete code" page: its program cells run, match the package and Keras, and map every
line of the article's listing to its replacement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mnist_lessons import complete_code as cc
from mnist_lessons.data import MNIST
from mnist_lessons.model import build_keras_model, copy_weights_to_keras, init_params

PAGE = Path(__file__).resolve().parents[1] / "book" / "complete_code.ipynb"

#: The article's complete source code, line by line, as published (indentation lost in its
#: text); quoted here as the oracle the page's mapping tables must cover, in order.
ARTICLE_LISTING = """\
import tensorflow as tf
from tensorflow.examples.tutorials.mnist import input_data
mnist = input_data.read_data_sets("/tmp/data/", one_hot = True)
n_classes = 10
batch_size = 128
x = tf.placeholder('float', [None, 784])
y = tf.placeholder('float')
keep_rate = 0.8
keep_prob = tf.placeholder(tf.float32)
def conv2d(x, W):
return tf.nn.conv2d(x, W, strides=[1,1,1,1], padding='SAME')
def maxpool2d(x):
# size of window movement of window
return tf.nn.max_pool(x, ksize=[1,2,2,1], strides=[1,2,2,1], padding='SAME')
def convolutional_neural_network(x):
weights = {'W_conv1':tf.Variable(tf.random_normal([5,5,1,32])),
'W_conv2':tf.Variable(tf.random_normal([5,5,32,64])),
'W_fc':tf.Variable(tf.random_normal([7*7*64,1024])),
'out':tf.Variable(tf.random_normal([1024, n_classes]))}
biases = {'b_conv1':tf.Variable(tf.random_normal([32])),
'b_conv2':tf.Variable(tf.random_normal([64])),
'b_fc':tf.Variable(tf.random_normal([1024])),
'out':tf.Variable(tf.random_normal([n_classes]))}
x = tf.reshape(x, shape=[-1, 28, 28, 1])
conv1 = tf.nn.relu(conv2d(x, weights['W_conv1']) + biases['b_conv1'])
conv1 = maxpool2d(conv1)
conv2 = tf.nn.relu(conv2d(conv1, weights['W_conv2']) + biases['b_conv2'])
conv2 = maxpool2d(conv2)
fc = tf.reshape(conv2,[-1, 7*7*64])
fc = tf.nn.relu(tf.matmul(fc, weights['W_fc'])+biases['b_fc'])
fc = tf.nn.dropout(fc, keep_rate)
output = tf.matmul(fc, weights['out'])+biases['out']
return output
def train_neural_network(x):
prediction = convolutional_neural_network(x)
cost = tf.reduce_mean( tf.nn.softmax_cross_entropy_with_logits(prediction,y) )
optimizer = tf.train.AdamOptimizer().minimize(cost)
hm_epochs = 10
with tf.Session() as sess:
sess.run(tf.initialize_all_variables())
for epoch in range(hm_epochs):
epoch_loss = 0
for _ in range(int(mnist.train.num_examples/batch_size)):
epoch_x, epoch_y = mnist.train.next_batch(batch_size)
_, c = sess.run([optimizer, cost], feed_dict={x: epoch_x, y: epoch_y})
epoch_loss += c
print('Epoch', epoch, 'completed out of',hm_epochs,'loss:',epoch_loss)
correct = tf.equal(tf.argmax(prediction, 1), tf.argmax(y, 1))
accuracy = tf.reduce_mean(tf.cast(correct, 'float'))
print('Accuracy:',accuracy.eval({x:mnist.test.images, y:mnist.test.labels}))
train_neural_network(x)
""".splitlines()


def _cells() -> list[dict]:
    return json.loads(PAGE.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.fixture(scope="module")
def page() -> dict:
    """The namespace left by running the page's program cells (those tagged complete-code)."""
    program = [_source(c) for c in _cells()
               if c["cell_type"] == "code" and "complete-code" in c["metadata"].get("tags", [])]
    assert len(program) >= 5, "the page's program cells are tagged complete-code"
    namespace: dict = {}
    for i, src in enumerate(program):
        exec(compile(src, f"complete_code.ipynb, program cell {i}", "exec"), namespace)
    return namespace


def test_page_network_gives_the_packages_and_keras_logits_with_the_same_weights(page, mnist):
    weights, biases = init_params("glorot", seed=3)
    x = mnist.x_test[:200].astype(np.float32) / 255.0
    ours = page["convolutional_neural_network"](x.reshape(-1, 784), weights, biases).numpy()
    package = cc.convolutional_neural_network(x.reshape(-1, 784), weights, biases).numpy()
    keras_model = build_keras_model()
    copy_weights_to_keras(weights, biases, keras_model)
    keras_logits = keras_model(x[..., None], training=False).numpy()
    assert ours.shape == (200, 10) and np.abs(ours).max() > 0.1
    np.testing.assert_array_equal(ours, package)
    np.testing.assert_allclose(ours, keras_logits, rtol=1e-4, atol=1e-5)


def test_page_network_drops_units_only_in_training(page, mnist):
    weights, biases = page["new_weights_and_biases"](0)
    x = mnist.x_test[:16].reshape(-1, 784).astype(np.float32) / 255.0
    net = page["convolutional_neural_network"]
    np.testing.assert_array_equal(net(x, weights, biases).numpy(), net(x, weights, biases).numpy())
    assert not np.array_equal(net(x, weights, biases).numpy(),
                              net(x, weights, biases, training=True).numpy())


def test_page_weights_match_the_package_and_count_the_hand_derived_parameters(page):
    ours, our_biases = page["new_weights_and_biases"](5)
    theirs, their_biases = cc.new_weights_and_biases(5)
    for key in ours:
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())
    assert {k: tuple(v.shape) for k, v in our_biases.items()} == {
        k: tuple(v.shape) for k, v in their_biases.items()}
    fc = int(np.prod(ours["W_fc"].shape)) + int(np.prod(our_biases["b_fc"].shape))
    assert fc == 7 * 7 * 64 * 1024 + 1024 == 3_212_288          # not "1024 parameters"
    total = sum(int(np.prod(v.shape)) for v in [*ours.values(), *our_biases.values()])
    assert total == build_keras_model().count_params() == 3_274_634


def test_page_trains_exactly_like_the_package(page, mnist, capsys):
    # Real MNIST, its first 1,000 test images: each version measures the whole test set it is
    # given, and agreement does not need 10,000.
    mnist = MNIST(mnist.x_train, mnist.y_train, mnist.x_test[:1000], mnist.y_test[:1000],
                  f"{mnist.source}, its first 1,000 test images")
    ours = page["train_neural_network"](mnist, hm_epochs=1, max_steps=3)
    theirs = cc.train_neural_network(mnist, hm_epochs=1, max_steps=3)
    out = capsys.readouterr().out
    assert out.count("Epoch 1 completed out of 1 loss:") == 2 and out.count("Accuracy:") == 2
    start, _ = cc.new_weights_and_biases(0)
    assert not np.allclose(ours[0]["W_fc"].numpy(), start["W_fc"].numpy()), "it trained"
    for key in ours[0]:
        np.testing.assert_allclose(ours[0][key].numpy(), theirs[0][key].numpy(), rtol=1e-5, atol=1e-6)
    assert ours[2] == pytest.approx(theirs[2], abs=2e-3)


def test_page_keras_model_is_the_packages_keras_model(page):
    src = next(_source(c) for c in _cells()
               if c["cell_type"] == "code" and "keras_model = keras.Sequential(" in _source(c))
    namespace = {"keep_rate": page["keep_rate"], "n_classes": page["n_classes"],
                 "glue": lambda *a, **k: None}
    exec("import keras\n" + src, namespace)
    ours, theirs = namespace["keras_model"], build_keras_model()
    describe = lambda m: [(l.name, type(l).__name__, l.count_params(), tuple(l.output.shape))
                          for l in m.layers]
    assert describe(ours) == describe(theirs)
    assert ours.get_layer("fc").count_params() == 3_212_288


def test_every_line_of_the_articles_listing_is_mapped_in_order():
    left, right = [], []
    for cell in _cells():
        if cell["cell_type"] != "markdown":
            continue
        rows = re.findall(r"^\| `(.+?)` \| (.*) \|$", _source(cell), re.M)
        left += [a for a, _ in rows]
        right += [b for _, b in rows]
    assert left == ARTICLE_LISTING
    assert all(b.strip() for b in right), "every article line has a replacement or a reason"
    assert len(ARTICLE_LISTING) == 51
