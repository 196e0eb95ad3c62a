"""``cluster-ssl cluster FOLDER``: train on a folder of images and write what it found."""
